"""The typed error hierarchy. Services raise these; ``app.py`` maps them to RFC 9457 problem details in one place.

Every error carries a stable machine ``code`` that clients may depend on, an HTTP status, and optionally the
offending field. Messages never contain secrets: callers pass descriptions, not the values they rejected.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldError:
    field: str
    message: str


class LicenseServerError(Exception):
    status_code = 500
    code = "internal_error"
    title = "Internal error"
    headers: dict[str, str] = {}
    # RFC 9457 extension members added to the problem body (e.g. the key, limit and used of a quota refusal).
    extensions: dict[str, object] = {}

    def __init__(self, detail: str | None = None, *, field: str | None = None, code: str | None = None) -> None:
        self.detail = detail or self.title
        self.field = field
        if code is not None:
            self.code = code
        super().__init__(self.detail)

    @property
    def field_errors(self) -> list[FieldError]:
        return [FieldError(self.field, self.detail)] if self.field else []


class ValidationFailed(LicenseServerError):
    status_code = 400
    code = "validation_error"
    title = "The request is invalid"

    def __init__(
        self,
        detail: str | None = None,
        *,
        field: str | None = None,
        errors: list[FieldError] | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(detail, field=field, code=code)
        self._errors = errors

    @property
    def field_errors(self) -> list[FieldError]:
        return self._errors if self._errors is not None else super().field_errors


class UnsupportedMediaType(LicenseServerError):
    status_code = 415
    code = "unsupported_media_type"
    title = "The request body is not JSON"


class NotFound(LicenseServerError):
    status_code = 404
    code = "not_found"
    title = "Not found"


class CustomerNotFound(NotFound):
    code = "customer_not_found"
    title = "Customer not found"


class PlanNotFound(NotFound):
    code = "plan_not_found"
    title = "Plan not found"


class LicenseNotFound(NotFound):
    code = "license_not_found"
    title = "License not found"


class TokenNotFound(NotFound):
    code = "token_not_found"
    title = "Token not found"


class KeyNotFound(NotFound):
    code = "key_not_found"
    title = "Signing key not found"


class Conflict(LicenseServerError):
    status_code = 409
    code = "conflict"
    title = "Conflict with the current state"


class LicenseRevoked(Conflict):
    code = "license_revoked"
    title = "The license is revoked"


class InvalidTransition(Conflict):
    code = "invalid_transition"
    title = "The action does not apply in the license's current state"


class AlreadyExists(Conflict):
    code = "already_exists"
    title = "Already exists"


class AuthenticationRequired(LicenseServerError):
    status_code = 401
    code = "authentication_required"
    title = "A valid bearer token is required"


class PermissionDenied(LicenseServerError):
    status_code = 403
    code = "permission_denied"
    title = "The token's role does not allow this"


class KeyringError(LicenseServerError):
    """The signing keys are missing, unreadable, unencrypted or otherwise unusable."""

    status_code = 503
    code = "keyring_unavailable"
    title = "Signing keys are unavailable"


class SecretUnreadable(KeyringError):
    """A sealed secret this server's keys do not open: sealed under another server's keys, or damaged."""

    code = "secret_unreadable"
    title = "A stored secret cannot be decrypted with this server's keys"


class ActivationNotFound(NotFound):
    code = "activation_not_found"
    title = "Activation not found"


class LicenseKeyNotFound(NotFound):
    """Unknown and malformed keys get this same answer, so a guess learns nothing about which keys exist."""

    code = "license_key_not_found"
    title = "No license matches this key"


class LicenseNotUsable(LicenseServerError):
    """The license exists but cannot be activated now; ``code`` says why (revoked, suspended, ...)."""

    status_code = 403
    code = "license_not_usable"
    title = "The license cannot be used now"


class TooManyActivations(Conflict):
    code = "too_many_activations"
    title = "All of the license's activations are in use"


class InvalidDeploymentToken(AuthenticationRequired):
    code = "invalid_deployment_token"
    title = "A valid deployment token is required"


class RateLimited(LicenseServerError):
    status_code = 429
    code = "rate_limited"
    title = "Too many requests"

    def __init__(self, retry_after: int, detail: str | None = None) -> None:
        super().__init__(detail or f"too many requests; retry after {retry_after} s")
        self.headers = {"Retry-After": str(retry_after)}


class CredentialNotFound(NotFound):
    code = "credential_not_found"
    title = "Inner-API credential not found"


class InvalidInnerApiSecret(AuthenticationRequired):
    code = "invalid_inner_api_secret"
    title = "A valid Enterprise-Api-Secret-Key is required"


class InnerApiSeatsInUse(PermissionDenied):
    """A new Dify install (an inner-API credential not yet bound to an activation) finds every seat taken."""

    code = "too_many_activations"
    title = "All of the license's activations are in use"


class OfflineFileRejected(LicenseServerError):
    """An activation request, license file or usage report was refused; ``code`` is ``offline_`` + the reason."""

    status_code = 400
    code = "offline_file_rejected"
    title = "The file was refused"

    def __init__(self, reason: str, detail: str, *, field: str | None = None, status_code: int = 400) -> None:
        super().__init__(detail, field=field, code=f"offline_{reason.lower()}")
        self.reason = reason
        self.status_code = status_code


class LicenseFileRefused(LicenseServerError):
    """The edge's license file can no longer be trusted (its signing key was retired): nothing is served from it."""

    status_code = 503
    code = "license_file_refused"
    title = "The license file is refused"


class OfflineBindingConflict(Conflict):
    code = "offline_binding_conflict"
    title = "The activation is bound to another install key"


# -- billing (the hosted half) -----------------------------------------------------------------------------------
class InvalidPlatformSecret(AuthenticationRequired):
    code = "invalid_platform_secret"
    title = "A valid platform secret is required"


class PlatformNotFound(NotFound):
    code = "platform_not_found"
    title = "Platform not found"


class BillingAccountNotFound(NotFound):
    code = "billing_account_not_found"
    title = "Billing account not found"


class SubscriptionNotFound(NotFound):
    code = "subscription_not_found"
    title = "Subscription not found"


class TestClockNotFound(NotFound):
    __test__ = False  # an error, not a pytest test class
    code = "test_clock_not_found"
    title = "Test clock not found"


class ReservationNotFound(NotFound):
    code = "reservation_not_found"
    title = "Reservation not found"


class UsageRecordNotFound(NotFound):
    code = "usage_record_not_found"
    title = "Usage record not found"


class SubscriptionLimitReached(LicenseServerError):
    """Seed 004's refusal, with the key, the limit and what is used (and held) as extension members."""

    status_code = 403
    code = "subscription_limit_reached"
    title = "This organization has reached its subscription limit. Please upgrade the plan."

    def __init__(self, *, key: str, limit: int, used: int) -> None:
        super().__init__(self.title, field="key")
        self.extensions = {"key": key, "limit": limit, "used": used}

    @property
    def field_errors(self) -> list[FieldError]:
        return [
            FieldError("key", f"{self.extensions['key']}: {self.extensions['used']} of {self.extensions['limit']} used")
        ]


class IdempotencyConflict(Conflict):
    """The idempotency key (request id, event id) was used before with a different request."""

    code = "idempotency_key_reused"
    title = "The idempotency key was already used with a different request"


class ReservationClosed(Conflict):
    code = "reservation_closed"
    title = "The reservation is no longer held"


class QuotaKindMismatch(Conflict):
    code = "quota_kind_mismatch"
    title = "The key is a different kind of quota"


class NotRefundable(Conflict):
    code = "not_refundable"
    title = "This usage record cannot be refunded"


class CreditsExhausted(LicenseServerError):
    """A debit the account's grants cannot cover while flex billing is off (seed 003): refused, nothing written."""

    status_code = 402
    code = "credits_exhausted"
    title = "The account has not enough credits and flex billing is off"


# -- the web console ---------------------------------------------------------------------------------------------
class CsrfTokenInvalid(PermissionDenied):
    """A console form or HTMX request without the session's CSRF token: refused before anything is read or written."""

    code = "csrf_token_invalid"
    title = "The form's security token is missing or wrong; reload the page and try again"


class StaffSignInFailed(AuthenticationRequired):
    """Unknown email, wrong password and disabled account look the same, so a guess learns nothing."""

    code = "staff_sign_in_failed"
    title = "The email or password is wrong"


class StaffSessionRequired(AuthenticationRequired):
    code = "staff_session_required"
    title = "Sign in to the console"


class StaffUserExists(AlreadyExists):
    code = "staff_user_exists"
    title = "A staff user with this email exists"


class InvoiceNotFound(NotFound):
    code = "invoice_not_found"
    title = "Invoice not found"


class InvoiceImmutable(Conflict):
    """An issued invoice's lines, amounts and period never change: corrections are credit notes."""

    code = "invoice_immutable"
    title = "An issued invoice cannot be changed"


class InvoiceStateConflict(Conflict):
    """The action does not apply to the invoice's status (void a paid invoice, pay a void one, over-refund)."""

    code = "invoice_state_conflict"
    title = "The action does not apply in the invoice's current status"


class PaymentProviderUnavailable(LicenseServerError):
    """The payment provider (Stripe) refused or could not be reached: worth retrying later."""

    status_code = 503
    code = "payment_provider_unavailable"
    title = "The payment provider could not be reached"


class PaymentProviderNotConfigured(Conflict):
    """This server has no payment provider for the request (no Stripe key, or the manual provider has no links): a
    state of the server's configuration, not a failure, so a 409 the caller can read, never a 5xx."""

    code = "payment_provider_not_configured"
    title = "No payment provider is configured for this"


class WebhookSignatureInvalid(LicenseServerError):
    status_code = 400
    code = "webhook_signature_invalid"
    title = "The webhook's signature does not verify"


class UnknownSetting(LicenseServerError):
    """A LICENSE_SERVER_* environment variable that names no setting: start-up is refused, never a silent default."""

    code = "unknown_setting"
    title = "Unknown setting"

    def __init__(self, variable: str, closest: str | None) -> None:
        hint = f"; did you mean {closest}?" if closest else "; `license-server config show` lists the settings"
        super().__init__(f"unknown setting {variable}{hint}", field=variable)
        self.closest = closest


class SubscriptionPastDue(LicenseServerError):
    """Consume / reserve while the account's subscription is past due: refused, nothing written; paying resumes it."""

    status_code = 402
    code = "subscription_past_due"
    title = "The subscription is past due: new runs are paused until it is paid"


class SubscriptionPaused(LicenseServerError):
    """Consume / reserve while the account's subscription is paused: refused, nothing written."""

    status_code = 403
    code = "subscription_paused"
    title = "The subscription is paused: new runs are refused until it is resumed"


class SubscriptionCanceled(Conflict):
    code = "subscription_canceled"
    title = "The subscription is canceled"

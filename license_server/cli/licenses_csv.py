"""``licenses issue --from-csv FILE``: many licenses from one spreadsheet export, with a progress bar.

Each row is its own transaction (the one ``issue_license`` call commits it), so a bad row is reported and the others
are issued; the file can then be fixed and run again. A row with an ``idempotency_key`` is issued at most once: the
key is kept in the license's metadata, and a later run finds it and reports the row as ``existing`` (its license key
is not shown again: it was shown once, on the run that issued it). A row without one is issued on every run.
"""

from __future__ import annotations

import asyncio
import csv
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from license_server import strict_json
from license_server.auth.tokens import cli_actor
from license_server.cli.common import (
    emit,
    fail,
    model_payload,
    parse_model,
    progress_on_stderr,
    settings,
    usage_error,
)
from license_server.errors import LicenseServerError, ValidationFailed
from license_server.licenses import service
from license_server.licenses.schemas import license_out, license_with_key
from license_server.licenses.terms import LicenseTerms
from license_server.runtime import Runtime
from license_server.schemas_common import query_timestamp

REQUIRED_COLUMNS = {"customer", "expires"}
COLUMNS = REQUIRED_COLUMNS | {"starts", "plan", "notes", "terms", "idempotency_key"}
MAX_ROWS = 100_000  # a file is read whole before the first row is issued, so a typo'd path to a huge file stops here


@dataclass(frozen=True)
class Row:
    number: int  # the line's row number in the file, the header being row 1, as a spreadsheet shows it
    values: dict[str, str]


def read_rows(path: Path, *, as_json: bool) -> list[Row]:
    """The file's rows, its header checked first: an unknown or missing column is a usage error before any write."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:  # -sig: Excel's UTF-8 export starts with a BOM
            reader = csv.DictReader(handle)
            header = [name.strip() for name in reader.fieldnames or []]
            unknown = sorted(set(header) - COLUMNS)
            missing = sorted(REQUIRED_COLUMNS - set(header))
            if unknown or missing:
                problems = [f"unknown column(s) {', '.join(unknown)}"] if unknown else []
                problems += [f"missing column(s) {', '.join(missing)}"] if missing else []
                usage_error(
                    f"--from-csv: {'; '.join(problems)} (columns: {', '.join(sorted(COLUMNS))})", as_json=as_json
                )
            reader.fieldnames = header
            rows = []
            for index, record in enumerate(reader, start=2):
                if index - 1 > MAX_ROWS:
                    usage_error(f"--from-csv: more than {MAX_ROWS} rows; split the file", as_json=as_json)
                if None in record:  # more cells than the header names
                    usage_error(f"--from-csv: row {index} has more cells than the header", as_json=as_json)
                values = {k: (v or "").strip() for k, v in record.items()}
                if any(values.values()):  # a blank line at the end of an export is not a row
                    rows.append(Row(index, values))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        usage_error(f"--from-csv: cannot read {path}: {exc}", as_json=as_json)
    return rows


def _terms(raw: str) -> LicenseTerms | None:
    if not raw:
        return None
    try:
        data = strict_json.loads(raw)
    except ValueError as exc:  # StrictJsonError is a ValueError too
        raise ValidationFailed(f"terms: not acceptable JSON ({exc})", field="terms") from None
    terms: LicenseTerms = parse_model(LicenseTerms, json.dumps(data), "terms")
    return terms


def _customer(raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise ValidationFailed("customer: not a customer id (a UUID)", field="customer") from None


async def _issue_row(runtime: Runtime, row: Row) -> dict[str, Any]:
    values = row.values
    import_key = values.get("idempotency_key") or None
    async with runtime.session_factory() as session:
        if import_key is not None and (existing := await service.license_id_by_import_key(session, import_key)):
            view = await service.get_license(session, existing, clock=runtime.clock)
            return {"row": row.number, "result": "existing", "license": model_payload(license_out(view))}
        expires_at = query_timestamp(values["expires"] or None, "expires")
        if expires_at is None:
            raise ValidationFailed("expires: required", field="expires")
        issued = await service.issue_license(
            session,
            actor=cli_actor(),
            hasher=runtime.hasher,
            customer_id=_customer(values["customer"]),
            expires_at=expires_at,
            starts_at=query_timestamp(values.get("starts") or None, "starts"),
            plan_ref=values.get("plan") or None,
            terms=_terms(values.get("terms", "")),
            notes=values.get("notes", ""),
            metadata={service.IMPORT_KEY: import_key} if import_key else None,
            clock=runtime.clock,
        )
        return {"row": row.number, "result": "issued", "license": model_payload(license_with_key(issued))}


async def _issue_all(rows: list[Row], progress: Callable[[int, int], None]) -> list[dict[str, Any]]:
    runtime = Runtime.build(settings())
    results = []
    try:
        for done, row in enumerate(rows, start=1):
            try:
                results.append(await _issue_row(runtime, row))
            except LicenseServerError as exc:
                fields = [{"field": e.field, "message": e.message} for e in exc.field_errors]
                error = {"error": exc.code, "detail": exc.detail, "fields": fields}
                results.append({"row": row.number, "result": "failed", **error})
            progress(done, len(rows))
    finally:
        await runtime.close()
    return results


def _line(result: dict[str, Any]) -> str:
    if result["result"] == "failed":
        return f"row {result['row']}: failed [{result['error']}] {result['detail']}"
    license = result["license"]
    if result["result"] == "existing":
        return f"row {result['row']}: existing license {license['id']} (issued by an earlier run)"
    return f"row {result['row']}: license {license['id']}  key (shown once, store it now): {license['key']}"


def issue_from_csv(path: Path, *, as_json: bool) -> None:
    rows = read_rows(path, as_json=as_json)
    # The bar is on stderr, so stdout stays the one JSON object (or the key lines) whatever the terminal.
    with progress_on_stderr("issuing") as progress:
        results = asyncio.run(_issue_all(rows, progress))
    counts = {kind: sum(r["result"] == kind for r in results) for kind in ("issued", "existing", "failed")}
    summary = f"{counts['issued']} issued, {counts['existing']} existing, {counts['failed']} failed"
    emit({**counts, "rows": results}, as_json=as_json, human="\n".join([*map(_line, results), summary]))
    if counts["failed"]:
        fail(f"{counts['failed']} of {len(rows)} rows failed; fix them and run the file again", "rows_failed")

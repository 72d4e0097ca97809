"""The customer portal (``/portal``): a hosted customer's billing pages and a self-hosted customer's licenses."""

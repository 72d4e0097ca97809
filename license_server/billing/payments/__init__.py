"""Payments against invoices: the provider interface, the manual provider (staff) and Stripe."""

"""Invoices per subscription and period: the rule, issuing, preview, PDFs."""

"""An invoice's PDF, drawn with fpdf2 from the same ``InvoiceDocument`` the JSON is made of.

The PDF shows what an issued invoice can never change (its number, lines, totals, dates), not its status or
payments, so it is rendered once and cached (``InvoicePdf``); the status and payments are in the JSON.

Helvetica (a PDF core font: nothing embedded, a small file, fast to write) covers Latin-1; any other character in
a name is replaced, so rendering never fails on what a platform sent.
"""

from __future__ import annotations

from datetime import datetime

from fpdf import FPDF

from license_server.billing.invoices.document import InvoiceDocument

_WIDTHS = (100.0, 22.0, 30.0, 30.0)  # description, quantity, unit price, amount (mm; A4 minus 14 mm margins)


def _latin1(text: str) -> str:
    return text.encode("latin-1", "replace").decode("latin-1")


def _date(moment: datetime | None) -> str:
    return f"{moment:%Y-%m-%d}" if moment else "-"


def render_pdf(document: InvoiceDocument) -> bytes:
    pdf = FPDF(format="A4")
    pdf.set_margins(14, 14, 14)
    pdf.set_auto_page_break(auto=True, margin=14)
    pdf.set_creator("license-server")
    pdf.set_title(_latin1(f"Invoice {document.number or 'preview'}"))
    # A fixed creation date: the same invoice always renders to the same bytes.
    pdf.set_creation_date(document.issued_at or document.period_start)
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 16)
    heading = f"Invoice {document.number}" if document.number else "Invoice preview (draft)"
    pdf.cell(0, 9, _latin1(heading), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", size=10)
    facts = [
        ("From", document.issuer),
        ("Bill to", f"{document.external_id} ({document.platform})"),
        ("Plan", document.plan),
        ("Issued", _date(document.issued_at)),
        ("Due", _date(document.due_at)),
        ("Period", f"{_date(document.period_start)} to {_date(document.period_end)}"),
        ("Currency", document.currency),
    ]
    for label, value in facts:
        pdf.cell(30, 6, label, new_x="RIGHT", new_y="TOP")
        pdf.cell(0, 6, _latin1(value), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)
    pdf.set_font("Helvetica", "B", 10)
    for width, title, align in zip(_WIDTHS, ("Description", "Quantity", "Unit price", "Amount"), "LRRR", strict=True):
        pdf.cell(width, 7, title, border="B", align=align, new_x="RIGHT", new_y="TOP")
    pdf.ln(7)
    pdf.set_font("Helvetica", size=10)
    for line in document.lines:
        values = (line.description, line.quantity, line.unit_price, line.amount)
        for width, value, align in zip(_WIDTHS, values, "LRRR", strict=True):
            pdf.cell(width, 7, _latin1(value), align=align, new_x="RIGHT", new_y="TOP")
        pdf.ln(7)
    if not document.lines:
        pdf.cell(0, 7, "Nothing to bill for this period.", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(2)
    for label, value in (("Subtotal", document.subtotal), ("Total", document.total)):
        pdf.set_font("Helvetica", "B" if label == "Total" else "", 10)
        pdf.cell(sum(_WIDTHS[:3]), 7, label, align="R", new_x="RIGHT", new_y="TOP")
        pdf.cell(_WIDTHS[3], 7, f"{value} {document.currency}", align="R", new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())

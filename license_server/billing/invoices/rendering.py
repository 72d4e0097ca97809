"""Invoice PDFs: rendered from the invoice's document once, cached, served from the cache after."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from license_server.billing.invoices import service
from license_server.billing.invoices.calculation import ZERO
from license_server.billing.invoices.document import InvoiceDocument, invoice_document
from license_server.billing.invoices.pdf import render_pdf


async def invoice_pdf(
    session: AsyncSession, *, number: str, account_id: uuid.UUID | None, issuer: str, now: datetime
) -> tuple[str, bytes]:
    """The invoice's PDF (``account_id`` confines it to that account's invoices): the cached one, or rendered now
    (in a worker thread, off the event loop) and cached."""
    view = await service.get_invoice(session, number=number, account_id=account_id)
    cached = await service.cached_pdf(session, view.invoice.id)
    if cached is not None:
        return view.invoice.number, cached
    # The PDF shows none of what payments change, so the paid and refunded figures do not enter it.
    content = await asyncio.to_thread(render_pdf, invoice_document(view, issuer=issuer, paid=ZERO, refunded=ZERO))
    await service.store_pdf(session, view.invoice.id, content, now)
    await session.commit()
    return view.invoice.number, await service.cached_pdf(session, view.invoice.id) or content


def _render_all(documents: list[InvoiceDocument]) -> list[bytes]:
    return [render_pdf(document) for document in documents]


async def render_missing_pdfs(
    session_factory: async_sessionmaker[AsyncSession],
    *,
    issuer: str,
    now: datetime,
    batch: int = 200,
    limit: int | None = None,
) -> int:
    """Render and cache the PDF of every issued invoice that has none yet, ``batch`` per transaction."""
    rendered = 0
    async with session_factory() as session:
        while limit is None or rendered < limit:
            ids = await service.invoices_without_pdf(session, limit=batch)
            if not ids:
                break
            views = await service.get_invoices(session, ids)
            documents = [invoice_document(v, issuer=issuer, paid=ZERO, refunded=ZERO) for v in views]
            contents = await asyncio.to_thread(_render_all, documents)
            for view, content in zip(views, contents, strict=True):
                await service.store_pdf(session, view.invoice.id, content, now)
            await session.commit()
            rendered += len(ids)
    return rendered

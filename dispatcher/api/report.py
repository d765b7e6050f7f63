"""`/warnings/{id}/report`: the printable after-action report (复盘报告), in the reader's
scope: the figures, the region table, the funnel, the curve, who stayed silent, the tasks
and the timeline of every recorded event."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import and_, or_, select

from dispatcher.access import region_condition
from dispatcher.api.deps import RuntimeDep, SessionDep
from dispatcher.api.session import AccessDep, warning_or_404
from dispatcher.api.web import render_page
from dispatcher.boards import broadcast_rows, task_rows
from dispatcher.figures import SILENT_STATES, answer_curve, funnel, people
from dispatcher.models import AuditEvent, Call
from dispatcher.summary import region_tree, warning_summary
from dispatcher.svg import answer_curve_svg

router = APIRouter(tags=["dashboard"], include_in_schema=False)
TIMELINE_LIMIT = 2000
EVENT_LABELS = {
    "warning.received": "收到预警",
    "warning.superseded": "预警被更新",
    "warning.cancelled": "预警解除",
    "warning.expired": "预警过期",
    "call.answered": "应答",
    "call.escalated": "升级",
    "call.deferred": "延后（静默时段）",
    "call.undeliverable": "无法送达",
    "attempt.failed": "发送失败",
    "digest.sent": "汇总通知已发",
    "task.opened": "生成敲门任务",
    "task.updated": "敲门任务更新",
    "task.escalated": "敲门任务升级",
    "task.household": "入户记录",
    "sms.inbound": "收到短信",
}


@router.get("/warnings/{warning_id}/report", response_class=HTMLResponse)
async def report(
    warning_id: int, request: Request, session: SessionDep, runtime: RuntimeDep, access: AccessDep
) -> HTMLResponse:
    warning = await warning_or_404(session, access, warning_id)
    in_scope = select(Call.id).where(
        Call.warning_id == warning.id, region_condition(Call.region_id, access)
    )
    query = select(AuditEvent).where(AuditEvent.warning_id == warning.id)
    if access.region_path is not None:
        # A scoped reader: their calls' events and the warning's own, nothing of elsewhere.
        query = query.where(
            or_(
                and_(AuditEvent.call_id.is_(None), AuditEvent.kind.startswith("warning.")),
                AuditEvent.call_id.in_(in_scope),
            )
        )
    events = list(
        await session.scalars(query.order_by(AuditEvent.at, AuditEvent.id).limit(TIMELINE_LIMIT))
    )
    total, points = await answer_curve(session, warning, access)
    return render_page(
        request,
        "report.html",
        {
            "warning": warning,
            "summary": await warning_summary(session, warning, access),
            "regions": await region_tree(session, warning.id, access),
            "funnel": await funnel(session, warning.id, access),
            "curve": answer_curve_svg(points, total),
            "silent": await people(session, warning.id, access, Call.state.in_(SILENT_STATES)),
            "tasks": await task_rows(session, access, warning_id=warning.id),
            "broadcasts": await broadcast_rows(session, warning.id, access),
            "events": events,
            "event_labels": EVENT_LABELS,
            "printed_at": runtime.clock.now(),
            "truncated": len(events) == TIMELINE_LIMIT,
        },
    )

"""Halts: the global halt and per-master halts."""

from __future__ import annotations

from services.infra.db.repositories.base import Connection, text


def master_halt_scope(master_id: str) -> str:
    return f"master:{master_id}"


GLOBAL_HALT_SCOPE = "global"


async def halt_scopes(conn: Connection) -> set[str]:
    return {str(row[0]) for row in (await conn.execute(text("SELECT scope FROM halts"))).all()}


async def set_halt(conn: Connection, scope: str, halted_by: str, halted: bool) -> None:
    if halted:
        await conn.execute(
            text(
                "INSERT INTO halts (scope, halted_by) VALUES (:s, :b) "
                "ON CONFLICT (scope) DO NOTHING"
            ),
            {"s": scope, "b": halted_by},
        )
    else:
        await conn.execute(text("DELETE FROM halts WHERE scope = :s"), {"s": scope})

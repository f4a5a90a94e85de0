"""The brokers an account can be linked at: GET /v1/brokers, each with the JSON schema of its
credentials (from brokers.registry), so a client (the dashboard's broker picker) shows the
right fields without a copy of them."""

from __future__ import annotations

from fastapi import APIRouter

from brokers.registry import DESCRIPTORS
from schemas.admin import BrokerOut

router = APIRouter()

CATALOGUE = [
    BrokerOut(name=name, credentials=d.credentials.model_json_schema())
    for name, d in DESCRIPTORS.items()
]


@router.get("/v1/brokers", response_model=list[BrokerOut])
async def list_brokers() -> list[BrokerOut]:
    return CATALOGUE

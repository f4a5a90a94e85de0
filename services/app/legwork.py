"""What a use case that records, sends and settles legs of its own works with (the
compensation of a refused master order, flattening): one set of collaborators, one place."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from services.app.sending import Sender
from services.app.settling import Settler
from services.infra.brokerage import BrokerFactory
from services.infra.crypto import CredentialCipher


@dataclass
class LegWork:
    engine: AsyncEngine
    factory: BrokerFactory
    cipher: CredentialCipher
    sender: Sender
    settler: Settler
    lease_s: float

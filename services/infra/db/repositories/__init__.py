"""Repositories per aggregate: every SQL statement of the service lives in this package.

Callers own the transaction (the request or message boundary commits); rows come back as plain
values, never ORM objects."""

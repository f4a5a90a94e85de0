"""The simulator's routes by area; each module's `routes(...)` lists its Starlette routes."""

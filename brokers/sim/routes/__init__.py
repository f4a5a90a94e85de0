"""The simulator's routes by area; each module's `routes(state)` lists its Starlette routes."""

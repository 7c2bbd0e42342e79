"""The e2e fixtures live in hfenv.py, a module with a name of its own: test modules import
its helpers as ``from hfenv import ...``, which ``from hfenv import ...`` cannot do safely
when several test directories (each with a conftest) are collected in one run."""

from hfenv import hf, moto_server  # noqa: F401  (fixtures, registered by being here)

"""The outbox conformance suite: every store with the
:class:`conveyor.store.base.OutboxStore` capability runs it.

An adapter's test module provides a ``store`` fixture (opened, migrated, empty, with
``enable_outbox()`` done) and subclasses :class:`OutboxContract`.
"""

from __future__ import annotations

import pytest

pytest.register_assert_rewrite("conveyor.testing.outbox_contract_cases")

from .outbox_contract_cases import OutboxCases  # noqa: E402


class OutboxContract(OutboxCases):
    """Every guarantee of :class:`conveyor.store.base.OutboxStore`, as pytest tests."""


__all__ = ["OutboxContract"]

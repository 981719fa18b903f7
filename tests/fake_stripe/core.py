"""`Core`: the fake's state with every resource operation as a method.

The state itself is `state.State`, and the operations live in one module per resource
(payment_intents.py, refunds.py, ...), as functions taking the State first. `Core` binds them
under the names they had when the fake was one class (`core.pi_create(ctx, params)`, ...),
for code that holds the state and wants to call into it directly, as some tests do.
The HTTP layer (routes.py, control.py) calls the modules.
"""
from __future__ import annotations

from . import (account_links, accounts, balance, charges, disputes, events, payment_intents,
               refunds, transfers)
from .payment_methods import TEST_PAYMENT_METHODS
from .state import DEFAULT_API_VERSION, PLATFORM_APPLICATION, Ctx, State, kind_of

__all__ = ["Core", "Ctx", "DEFAULT_API_VERSION", "PLATFORM_APPLICATION", "TEST_PAYMENT_METHODS",
           "kind_of"]


class Core(State):
    emit = events.emit
    emit_custom = events.emit_custom
    event_retrieve = events.retrieve
    event_list = events.list_

    pi_create = payment_intents.create
    pi_retrieve = payment_intents.retrieve
    pi_update = payment_intents.update
    pi_confirm = payment_intents.confirm
    pi_capture = payment_intents.capture
    pi_cancel = payment_intents.cancel
    pi_list = payment_intents.list_
    pi_authenticate = payment_intents.authenticate
    charge_retrieve = charges.retrieve
    charge_list = charges.list_

    refund_create = refunds.create
    refund_retrieve = refunds.retrieve
    refund_update = refunds.update
    refund_cancel = refunds.cancel
    refund_set_status = refunds.set_status
    refund_list = refunds.list_

    account_create = accounts.create
    account_retrieve = accounts.retrieve
    account_update = accounts.update
    account_list = accounts.list_
    account_deauthorize = accounts.deauthorize
    platform_account = staticmethod(accounts.platform_account)
    account_set_state = account_links.set_state
    account_complete_onboarding = account_links.complete_onboarding
    account_link_create = account_links.create_link
    login_link_create = account_links.create_login_link
    onboarding_open = account_links.open_link
    onboarding_submit = account_links.submit

    transfer_create = transfers.create
    transfer_retrieve = transfers.retrieve
    transfer_update = transfers.update
    transfer_list = transfers.list_
    reversal_create = transfers.create_reversal
    reversal_list = transfers.list_reversals
    reversal_retrieve = transfers.retrieve_reversal

    dispute_create = disputes.open_dispute
    dispute_retrieve = disputes.retrieve
    dispute_update = disputes.update
    dispute_close = disputes.close
    dispute_resolve = disputes.resolve
    dispute_list = disputes.list_

    payout_simulate = balance.simulate_payout

    def simple_retrieve(self, ctx: Ctx, obj_id: str, kind: str, p):  # the old argument order
        return self.retrieve(ctx, obj_id, p, kind)

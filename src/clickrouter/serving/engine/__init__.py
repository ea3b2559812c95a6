"""The decision engine: the live bank, the decision path, click ids and durable events.

:class:`~.service.PredictorService` decides (through :class:`~.decision.DecisionPath`:
the bank's ranking, then the policy), scores and records sales against the
bank :class:`~.holder.BankHolder` keeps live. No HTTP here: the HTTP app, the
replay and any other transport call the same objects.
"""

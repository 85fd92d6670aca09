"""The recommendation of a run: both limits, the plugin configuration, and the verdict on them.

Synthetic runs (sizes × hit ratios) choose each limit from the measured sizes
(:mod:`sp_istio_cache.analysis.tuning`); runs driven by a traffic profile choose the response
limit from the profile's sizes (:mod:`sp_istio_cache.analysis.traffic`). Either way
:func:`sp_istio_cache.analysis.verdict.judge` decides whether the result may be trusted; a
refused recommendation still carries the configuration it would have made, marked refused.
"""

from __future__ import annotations

from typing import Any

from .results import RunData
from .tuning import Budget, Recommendation, choose_limit, plugin_config_for
from .verdict import Rules, judge


def recommend(run: RunData, budget: Budget, *, rules: Rules | None = None,
              base_config: dict[str, Any] | None = None, module_problem: str | None = None) -> Recommendation:
    """Choose ``max_response_body_bytes`` and ``max_request_body_bytes`` for ``budget`` from
    ``run`` and judge the choice (``module_problem``: why the run's module is not the built one,
    None when it is).

    Raises:
        PluginConfigError: ``base_config`` with the limits is not a valid plugin configuration.
    """
    rules = rules or Rules(max_error_rate=float(run.manifest.parameters.get("max_error_rate", Rules.max_error_rate)))
    traffic = None
    if run.profile is not None:
        from .traffic import choose_for_profile

        response, traffic = choose_for_profile(run, budget)
        choices = [response, choose_limit(run, budget, "request_body_bytes")]
    else:
        choices = [choose_limit(run, budget, "payload_bytes"), choose_limit(run, budget, "request_body_bytes")]
    config = plugin_config_for(choices, base_config)
    verdict = judge(run, choices, budget, rules, module_problem)
    return Recommendation(budget=budget, choices=choices, plugin_config=config, verdict=verdict,
                          module_sha256=run.manifest.environment.wasm_sha256, run_dir=str(run.run_dir),
                          traffic=traffic)

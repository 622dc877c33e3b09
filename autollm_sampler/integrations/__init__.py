"""Drop-in integrations of the research agent (they import :mod:`autollm_sampler.agent`, never the gym).

* :mod:`autollm_sampler.integrations.optuna`: :class:`AutoLLMSampler`, an ``optuna.samplers.BaseSampler``;
* :mod:`autollm_sampler.integrations.ray`: :class:`AutoLLMSearcher`, a ``ray.tune.search.Searcher``;
* :mod:`autollm_sampler.integrations.asktell`: :class:`AskTell`, a plain ask/tell object (no Optuna, no Ray);
* :mod:`autollm_sampler.integrations.cli`: the ``suggest`` and ``explain`` commands;
* :class:`Explanation`: what every ``explain`` returns (a ``str`` shown as its text in a notebook).

Optuna and Ray are imported only by the module that needs them; import the class from its module, or
from the package root (``from autollm_sampler import AutoLLMSampler``), which loads it lazily.
"""

from autollm_sampler.integrations._explain import Explanation

__all__ = ["Explanation"]

"""Analyses of a finished search, all on prompts the search never saw: the held-out evaluator every analysis
shares (``evaluation``), the comparison with hand-written pairs and prompting (``compare``), distillation
into short pairs (``distill``) and pair length vs strength (``length``), run together by ``analyze``.

Analyses import the core (``search.session``, ``search.space``, ...) and the config; they never import the
report, which renders their typed results.
"""

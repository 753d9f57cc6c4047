"""search: the Optuna search for steering vectors, in layers (each imports only those below it):

config/ (typed specs) <- core (params, space, workers, study, mutate, adversarial, vectors, objective,
outputs, session, run) <- analysis/ (held-out evaluation, compare, distill, length) <- report/ <- cli/.
"""

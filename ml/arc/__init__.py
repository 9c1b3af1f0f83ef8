"""ARC test-time training (after Akyürek et al. 2024) as resumable Baton jobs.

Job kinds: ``ml.arc.ttt`` (``python -m ml.arc.ttt_job``) trains one LoRA adapter per task and
predicts; ``ml.arc.eval`` (``python -m ml.arc.eval_job``) scores predictions. The control
plane validates their configs with :mod:`ml.arc.configs`, which imports no ML libraries.
"""

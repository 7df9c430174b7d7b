"""The GPU tier: GLM-4.6V-Flash (any GLM-4V-architecture checkpoint) behind the analyzer contract.

loading -> prompt (untrusted context fenced) -> fast path (labels read from the logits over allowed label
tokens, a handful of constrained decode steps; confidence from those probabilities) -> explanation path (only
for items the policy tags or blocks) -> verdict. Needs the ``vlm`` extra (torch, transformers, torchao).
"""

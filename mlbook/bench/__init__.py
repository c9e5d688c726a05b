"""`python -m mlbook bench ...`: speed ratios measured in one run (never a timed test).

- ``bench metrics`` (``bench.metrics``): the vectorised metrics vs a per-class scikit-learn loop;
- ``bench head-to-head`` (``bench.head_to_head``): train and inference img/s of chapter 08's own rows on
  random maps of the protocol's shape, relative to the BCE network;
- ``bench.decoding``: ``beam_search_reference``, the search of ``mlbook.decoding`` written plainly (the
  tests' oracle);
- one module per paper, named by its registry key (``mlbook.papers``), for what is the paper's own:
  ``bench_train`` (training throughput, ``bench train --model KEY``) and ``bench_decode`` (batched
  beam search vs the reference, ``bench decode``); ``common``: timing a step.
"""

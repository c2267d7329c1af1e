"""Inference: trie-constrained beam search (`decoding`), the network wired into it
(`generation`), ranked items from any MODEL_DIR (`retrieval`), metrics (`metrics`), evaluation
of a MODEL_DIR on a dataset split (`evaluate`) and recommendations (`recommend`)."""

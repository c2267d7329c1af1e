"""Recipes that run end to end: the semantic-id recommender trained from scratch
(`sid_retrieval`, its rows `prefix_shared`, its auxiliary tasks `sid_aux`), `jaxrec reproduce`
(`reproduce`) and `jaxrec demo` (`demo`, `report`)."""

"""The composition root: what a running scopegate process holds, built once from Settings."""

"""The OAuth 2.1 authorization server: Authlib's grants and endpoints on our store."""

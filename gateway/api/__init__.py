"""The HTTP API: commands, ad-hoc SQL, catalogue reads, OpenAPI, and errors as HTTP."""

"""The dashboard: the server-rendered page, its HTML fragments and chart, the `datastar`
feed format, and the static assets (`static/`)."""

"""The operator's monitoring dashboard at ``/monitor`` and its JSON API."""

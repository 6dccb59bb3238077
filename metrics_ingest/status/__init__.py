"""The status page's figures: what each source pushed, when, and what was refused, taken from
the service's own counters and the store; and the page itself, rendered as HTML."""

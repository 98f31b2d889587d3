"""The push services the edge delivers through: each a `Provider` (base.py) that sends one
`Notification` to one `Registration` and says how it went (`Result`)."""

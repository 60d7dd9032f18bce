"""The webhook sink: a contract's deliveries POSTed to its subscriber's endpoint, signed.

:mod:`.signing` makes the Standard Webhooks headers, :mod:`.endpoint` decides where a call may
go and how long to wait before the next, :mod:`.calls` makes one delivery's calls until one is
accepted or the retry budget is spent, :mod:`.sink` reads the delivery topic and commits what
was accepted, and :mod:`.metrics` counts it all.
"""

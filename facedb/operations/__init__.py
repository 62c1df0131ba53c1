"""The operations behind ``FaceDB``'s verbs: ``enroll`` (enrollment and import), ``search``
(1:N and 1:1), ``maintenance`` (check, repair, vacuum, reindex, stats), ``migrate`` (copy to
other stores) and ``gatekeeper`` (API keys and the audit trail)."""

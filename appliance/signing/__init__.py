"""Sign requests: the typed request and its state table (:mod:`appliance.signing.states`),
the service a client talks to (:mod:`appliance.signing.requests`), what the node reads in a
payload (:mod:`appliance.signing.reading`) and the sign job (:mod:`appliance.signing.sign_job`)."""

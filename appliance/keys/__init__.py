"""Keys: keygen, import, refresh, reshare; shares; the two-phase change (prepare, commit,
finalize) as a state table (:mod:`appliance.keys.states`)."""

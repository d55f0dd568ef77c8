"""The node among its peers: peer health, quarantine, policy sync, audit checkpoint co-signing."""

"""Jobs: the coordinator, the participant and the session driver (frames in and out).

The node that receives a client request *coordinates*: it sends the job description to the
other parties (``POST /v1/peer/jobs``), runs its own part if it is one of them, collects every
party's report, and finishes or cancels the job everywhere with the cause and the culprits.
What a job of each kind does is the kind's own (:class:`appliance.jobs.kinds.JobKind`:
keys/, pools/, signing/); this package knows only how jobs run.
"""

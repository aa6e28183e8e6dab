"""Running the system: the job lock and record, the schedule, `heartrisk up` and `heartrisk status`."""

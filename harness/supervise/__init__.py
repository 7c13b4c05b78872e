"""Start, watch and stop a server tree, and find out where it was stuck.

Lifecycle: `supervisor` (ServerProcess: start, watch, stop) over `launch` (session, cgroup,
markers, watchdog pipe, output pump), `readyline` (the checked ready line), `probes`
(readiness), `sampling` (CPU and PSS memory), `fdaudit` (the harness's own fds), `output`
(bounded, always-drained server output) and `reports` (the records it hands back).
Containment: `proctree` (every process a server started, and ending them) over `procscan`,
`reaper` (the subreaper), `cgroup` and `markers`; `cleanup` finds what dead runs left.
Forensics: `forensics` (capture) over `stacks` (py-spy, faulthandler), `procfs` (the kernel's
view), `diagnosis` (the one-phrase summary) and `dumps` (the records).
"""

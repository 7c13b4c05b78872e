"""Start, watch and stop a server tree, and find out where it was stuck.

`proctree` finds and ends every process a server started (subreaper, run marker); `supervisor`
starts the server and reads its ready line; `forensics` captures stacks and kernel state.
"""

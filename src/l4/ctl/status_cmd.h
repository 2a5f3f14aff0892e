// `switchyard l4 status [--pin-path DIR]`: what a director (running or not) has pinned under its
// l4.pin_path: services, real servers with their per-CPU counters summed, and the data path's
// global counters (one "name value" line each, enum l4_stat order). Read-only; like
// `ipvsadm -Ln --stats`. Needs root (bpffs objects).
#pragma once

namespace switchyard::l4 {

// argv[0] is the word after `l4` ("status"). Returns the exit code (0, 1 no state, 2 usage).
int l4_main(int argc, char** argv);

}  // namespace switchyard::l4

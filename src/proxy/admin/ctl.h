// `switchyard ctl`: a command-line client of the admin API (docs/admin-api.md), printing tables
// (or the API's JSON with --json). Synchronous; runs on the calling thread.
#pragma once

namespace switchyard::proxy::admin {

// argv[0] is the first argument after "ctl". Returns the process exit code: 0 success, 1 the
// request failed (the API's message is printed), 2 usage error.
int run_ctl(int argc, char** argv);

}  // namespace switchyard::proxy::admin

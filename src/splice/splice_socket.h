// Readies a TCP socket to be one end of a splice(2) path (body_pump.h). Shared by spliced
// bodies (Session) and spliced tunnels (Tunnel); done once per socket, the caller remembers it.
#pragma once

#include <cstddef>

namespace switchyard::splice {

// Sets O_NONBLOCK (a socket splice honours the file's flag, not SPLICE_F_NONBLOCK; io_uring does
// not mind either way) and, when notsent_lowat > 0, TCP_NOTSENT_LOWAT.
//
// Why the low-water mark: without it one splice() hands the socket everything the pipe holds
// (up to pipe_size), and when the peer's receive window is the limit most of it waits in the
// send queue as not-yet-sent data. The kernel then transmits it whenever an ACK or window update
// arrives — in the softirq of whoever sent that ACK, i.e. on the *receiver's* CPU. On loopback
// and on hosts where the client shares cores this moved our send work onto the client, whose
// receive window then grew slowly (bench get-1m: 1 700 MiB/s without a mark, 2 650 with 32 KiB; the
// client's CPU per MiB was 2.5x HAProxy's). With the mark, a splice stops once that much is
// unsent and the socket reports writable again below half of it, so the bytes wait in our pipe
// and are sent from our own splice() calls. False only if O_NONBLOCK could not be set; a refused
// low-water mark (not TCP) is only a lost optimisation.
bool prepare_splice_socket(int fd, std::size_t notsent_lowat);

}  // namespace switchyard::splice

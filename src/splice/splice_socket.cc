#include "splice/splice_socket.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <climits>

namespace switchyard::splice {

bool prepare_splice_socket(int fd, std::size_t notsent_lowat) {
  // Sockets have none of the other F_SETFL flags set, so this is their whole flag word.
  if (::fcntl(fd, F_SETFL, O_NONBLOCK) != 0) return false;
  if (notsent_lowat > 0) {
    int v = notsent_lowat > INT_MAX ? INT_MAX : static_cast<int>(notsent_lowat);
    (void)::setsockopt(fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &v, sizeof v);
  }
  return true;
}

}  // namespace switchyard::splice

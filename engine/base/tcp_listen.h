// ListenTcp: opens, binds and listens a TCP acceptor on a configured address and port, for every
// mxward endpoint that listens on TCP (/metrics, the Dovecot and Postfix policy servers). Address
// reuse, so a restart does not wait out TIME_WAIT; v6_only on an IPv6 address, so "::" does not
// also take the IPv4 port another endpoint may hold. On failure the acceptor is closed and the
// error names the endpoint ("192.0.2.1:9580", "[::1]:9580"), `what` first ("metrics: cannot
// listen on ..."), and, when given, `hint`: what to change in the configuration.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include <boost/asio/ip/tcp.hpp>

#include "mxward/status.h"

namespace mxward {

// "host:port", with an IPv6 host in brackets.
std::string TcpEndpointName(const std::string& address, std::uint16_t port);

Status ListenTcp(boost::asio::ip::tcp::acceptor& acceptor, const std::string& address,
                 std::uint16_t port, std::string_view what, std::string_view hint = {});

}  // namespace mxward

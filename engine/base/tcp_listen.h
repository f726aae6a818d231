// ListenTcp: opens, binds and listens a TCP acceptor on a configured address and port, for every
// mxward endpoint that listens on TCP (/metrics, the Dovecot and Postfix policy servers). Address
// reuse, so a restart does not wait out TIME_WAIT; v6_only on an IPv6 address, so "::" does not
// also take the IPv4 port another endpoint may hold. On failure the acceptor is closed and the
// error names the endpoint ("192.0.2.1:9580", "[::1]:9580"), `what` first ("metrics: cannot
// listen on ..."), and, when given, `hint`: what to change in the configuration.
// PeerAddressKey: whom a TCP client counts against in a per-peer connection cap.
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

// The per-peer key of a TCP client's address: the address (a v4-mapped IPv6 address as IPv4), and
// every loopback address as one key, "loopback": any local user may connect from any of
// 127.0.0.0/8, so one key per loopback address would be no cap.
std::string PeerAddressKey(const boost::asio::ip::address& address);

}  // namespace mxward

#include "engine/base/tcp_listen.h"

#include <fmt/format.h>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/v6_only.hpp>
#include <boost/asio/socket_base.hpp>

namespace mxward {

namespace asio = boost::asio;

std::string TcpEndpointName(const std::string& address, std::uint16_t port) {
  return address.find(':') != std::string::npos ? fmt::format("[{}]:{}", address, port)
                                                : fmt::format("{}:{}", address, port);
}

std::string PeerAddressKey(const asio::ip::address& address) {
  asio::ip::address a = address;
  if (a.is_v6() && a.to_v6().is_v4_mapped()) {
    a = asio::ip::make_address_v4(asio::ip::v4_mapped, a.to_v6());
  }
  return a.is_loopback() ? "loopback" : a.to_string();
}

Status ListenTcp(asio::ip::tcp::acceptor& acceptor, const std::string& address, std::uint16_t port,
                 std::string_view what, std::string_view hint) {
  const std::string where = TcpEndpointName(address, port);
  boost::system::error_code ec;
  const auto addr = asio::ip::make_address(address, ec);
  if (ec) return Status::InvalidArgument(fmt::format("{}: bad address {}", what, where));
  const asio::ip::tcp::endpoint ep(addr, port);
  acceptor.open(ep.protocol(), ec);
  if (!ec) acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec && addr.is_v6()) acceptor.set_option(asio::ip::v6_only(true), ec);
  if (!ec) acceptor.bind(ep, ec);
  if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (!ec) return Status::Ok();
  boost::system::error_code ignored;
  acceptor.close(ignored);
  return Status::Unavailable(
      hint.empty()
          ? fmt::format("{}: cannot listen on {}: {}", what, where, ec.message())
          : fmt::format("{}: cannot listen on {}: {} ({})", what, where, ec.message(), hint));
}

}  // namespace mxward

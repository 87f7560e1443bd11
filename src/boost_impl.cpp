// With EVDISPATCH_SEPARATE_COMPILATION (CMake option; ON when evdispatch is built on its own):
// the one translation unit that compiles Asio, Asio.SSL and Beast. Everything that includes
// their headers then sees BOOST_ASIO_SEPARATE_COMPILATION and BOOST_BEAST_SEPARATE_COMPILATION
// (PUBLIC definitions of evdispatch::evdispatch). Boost.JSON and Boost.URL are linked as
// Boost's own libraries.
#include <boost/asio/impl/src.hpp>
#include <boost/asio/ssl/impl/src.hpp>
#include <boost/beast/src.hpp>

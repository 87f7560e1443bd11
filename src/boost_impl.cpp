// The one translation unit that compiles Asio, Asio.SSL, Beast, Boost.JSON and Boost.URL.
// Everything else includes their headers with *_SEPARATE_COMPILATION defined (see CMake).
#include <boost/asio/impl/src.hpp>
#include <boost/asio/ssl/impl/src.hpp>
#include <boost/beast/src.hpp>
#include <boost/json/src.hpp>
#include <boost/url/src.hpp>

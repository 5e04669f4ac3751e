#pragma once
// Whether this process can run CUDA work, and if not, why. A machine with
// no NVIDIA driver and no GPU (CI, a laptop) is told apart from one whose
// GPU cannot be used (a driver older than this runtime needs, a device
// that is busy, lost or hidden): the CUDA runtime reports both as an error
// of cudaGetDeviceCount (cudaErrorInsufficientDriver without any driver),
// so the driver's own traces decide. Tests skip on the first and fail on
// the second; benches refuse to report numbers on either.

#include <cuda_runtime.h>

#include <string>
#include <sys/stat.h>

#include <fmt/format.h>

namespace repshift {
namespace cuda {

struct DeviceStatus {
  enum Kind { Usable, Absent, Unusable };
  Kind kind = Absent;
  std::string why;  // empty when Usable
};

// Probed once per process (cudaGetDeviceCount is not free, and its answer
// does not change).
inline const DeviceStatus& device_status() {
  static const DeviceStatus status = [] {
    int count = 0;  // left untouched when the call fails
    const cudaError_t err = cudaGetDeviceCount(&count);
    if (err == cudaSuccess && count > 0) return DeviceStatus{DeviceStatus::Usable, ""};
    (void)cudaGetLastError();  // clear the error so later calls start clean
    struct stat st;
    const bool driver = stat("/dev/nvidiactl", &st) == 0 || stat("/proc/driver/nvidia/version", &st) == 0;
    const std::string why =
        err == cudaSuccess ? std::string("cudaGetDeviceCount found no device")
                           : fmt::format("cudaGetDeviceCount: {}: {}", cudaGetErrorName(err), cudaGetErrorString(err));
    if (driver) {
      return DeviceStatus{
          DeviceStatus::Unusable,
          fmt::format("{} (an NVIDIA driver is installed, so a GPU is expected: it cannot be used)", why)};
    }
    return DeviceStatus{DeviceStatus::Absent, fmt::format("{} (no NVIDIA driver on this machine)", why)};
  }();
  return status;
}

}  // namespace cuda
}  // namespace repshift

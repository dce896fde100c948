/* Symbol visibility for libdisseg: only what is marked DISSEG_API is exported. */
#ifndef DISSEG_EXPORT_H
#define DISSEG_EXPORT_H
#if defined(_WIN32)
#ifdef DISSEG_BUILDING
#define DISSEG_API __declspec(dllexport)
#else
#define DISSEG_API __declspec(dllimport)
#endif
#else
#define DISSEG_API __attribute__((visibility("default")))
#endif
#endif

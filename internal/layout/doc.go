// Package layout holds the test that keeps the package graph as the design draws it: which
// project packages each package may import, the leaves that import none, the one package that
// knows the concrete key stores, and a package doc for every package. It has no code of its
// own and knows every package only by its import path.
package layout

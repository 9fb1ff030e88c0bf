// Command crd-cost prints, for each CustomResourceDefinition file given, the estimated cost of
// every x-kubernetes-validations rule as kube-apiserver computes it when it admits a CRD (the
// same packages, at the same release): the rule's worst cost per call times the most times it
// can run, the product of maxItems and maxProperties of every list and map above it. The API
// server refuses a rule over 10,000,000 and a CRD whose rules sum over 100,000,000.
//
// Output: one JSON object per rule, {"crd", "path", "rule", "cost"}.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"

	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/validation"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
	"k8s.io/apiserver/pkg/cel/environment"
	"sigs.k8s.io/yaml"
)

type ruleCost struct {
	CRD  string `json:"crd"`
	Path string `json:"path"`
	Rule string `json:"rule"`
	Cost uint64 `json:"cost"`
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: crd-cost CRD.yaml...")
		os.Exit(2)
	}
	envSet := environment.MustBaseEnvSet(environment.DefaultCompatibilityVersion())
	out := json.NewEncoder(os.Stdout)
	for _, path := range os.Args[1:] {
		data, err := os.ReadFile(path)
		check(err)
		var external apiextensionsv1.CustomResourceDefinition
		check(yaml.UnmarshalStrict(data, &external))
		var crd apiextensions.CustomResourceDefinition
		check(apiextensionsv1.Convert_v1_CustomResourceDefinition_To_apiextensions_CustomResourceDefinition(&external, &crd, nil))
		// The internal form keeps one top-level schema when every version has the same one.
		schemas := map[string]*apiextensions.CustomResourceValidation{}
		if crd.Spec.Validation != nil {
			schemas[crd.Name] = crd.Spec.Validation
		}
		for _, version := range crd.Spec.Versions {
			if version.Schema != nil {
				schemas[crd.Name+"/"+version.Name] = version.Schema
			}
		}
		for name, validation := range schemas {
			if validation.OpenAPIV3Schema != nil {
				schema := validation.OpenAPIV3Schema
				walk(schema, rootContext(schema), name, "", envSet, func(c ruleCost) { check(out.Encode(c)) })
			}
		}
	}
}

// walk visits every schema node the way the API server's validation does, with the cardinality
// context it keeps, and reports the cost of the node's rules.
func walk(s *apiextensions.JSONSchemaProps, ctx *validation.CELSchemaContext, crd, path string, envSet *environment.EnvSet, report func(ruleCost)) {
	if len(s.XValidations) > 0 {
		typeInfo, err := ctx.TypeInfo()
		check(err)
		results, err := cel.Compile(typeInfo.Schema, typeInfo.DeclType, celconfig.PerCallLimit, envSet, cel.NewExpressionsEnvLoader())
		check(err)
		for i, result := range results {
			if result.Error != nil {
				check(fmt.Errorf("%s%s: %s: %s", crd, path, s.XValidations[i].Rule, result.Error.Detail))
			}
			cardinality := result.MaxCardinality
			if ctx.MaxCardinality != nil {
				cardinality = *ctx.MaxCardinality
			}
			report(ruleCost{CRD: crd, Path: path, Rule: s.XValidations[i].Rule, Cost: multiply(result.MaxCost, cardinality)})
		}
	}
	names := make([]string, 0, len(s.Properties))
	for name := range s.Properties {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		property := s.Properties[name]
		walk(&property, ctx.ChildPropertyContext(&property, name), crd, path+"."+name, envSet, report)
	}
	if s.Items != nil && s.Items.Schema != nil {
		walk(s.Items.Schema, ctx.ChildItemsContext(s.Items.Schema), crd, path+"[*]", envSet, report)
	}
	if s.AdditionalProperties != nil && s.AdditionalProperties.Schema != nil {
		walk(s.AdditionalProperties.Schema, ctx.ChildAdditionalPropertiesContext(s.AdditionalProperties.Schema), crd, path+"{*}", envSet, report)
	}
}

func rootContext(schema *apiextensions.JSONSchemaProps) *validation.CELSchemaContext {
	return validation.RootCELContext(schema)
}

func multiply(cost, cardinality uint64) uint64 {
	if cost != 0 && cardinality > ^uint64(0)/cost {
		return ^uint64(0)
	}
	return cost * cardinality
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "crd-cost:", err)
		os.Exit(1)
	}
}

/* Kubernetes objects as the API server sends them in a watch, written with '
 * for " (see dq() in the tests). managedFields is last in metadata, where
 * ObjectMeta's field order puts it. */
#ifndef OBJ_FIXTURES_H
#define OBJ_FIXTURES_H

#define CM_META                                                                                                        \
    "'name':'app-config','namespace':'shop','uid':'0b5a7c4e-2f1d-4d8b-9c3e-6a7f8e9d0c1b','resourceVersion':'48213',"  \
    "'creationTimestamp':'2024-05-01T10:00:00Z','labels':{'app.kubernetes.io/name':'shop'},"                         \
    "'annotations':{'kubectl.kubernetes.io/last-applied-configuration':'{\\'apiVersion\\':\\'v1\\',\\'data\\':"      \
    "{\\'LOG_LEVEL\\':\\'info\\'},\\'kind\\':\\'ConfigMap\\'}\\n'}"
#define CM_MF                                                                                                          \
    "[{'manager':'kubectl-client-side-apply','operation':'Update','apiVersion':'v1','time':'2024-05-01T10:00:00Z',"   \
    "'fieldsType':'FieldsV1','fieldsV1':{'f:data':{'.':{},'f:LOG_LEVEL':{},'f:config.yaml':{}},'f:metadata':"         \
    "{'f:annotations':{'.':{},'f:kubectl.kubernetes.io/last-applied-configuration':{}},'f:labels':{'.':{},"          \
    "'f:app.kubernetes.io/name':{}}}}}]"
#define CM_DATA "'data':{'LOG_LEVEL':'info','config.yaml':'server:\\n  port: 8080\\n  name: \\u00e9t\\u00e9\\n'}"
#define CM_WITH_MF                                                                                                     \
    "{'kind':'ConfigMap','apiVersion':'v1','metadata':{" CM_META ",'managedFields':" CM_MF "}," CM_DATA "}"
#define CM_WITHOUT_MF "{'kind':'ConfigMap','apiVersion':'v1','metadata':{" CM_META "}," CM_DATA "}"

#define POD_META_FIELDS                                                                                                \
    "'name':'web-7d9f8-abcde','generateName':'web-7d9f8-','namespace':'shop',"                                       \
    "'uid':'9d8e7f6a-5b4c-4d3e-8f2a-1b0c9d8e7f6a','resourceVersion':'90210',"                                        \
    "'creationTimestamp':'2024-05-02T08:15:00Z',"                                                                      \
    "'labels':{'app':'web','pod-template-hash':'7d9f8'},'ownerReferences':[{'apiVersion':'apps/v1',"                 \
    "'kind':'ReplicaSet','name':'web-7d9f8','uid':'1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d','controller':true,"         \
    "'blockOwnerDeletion':true}]"
#define POD_MF                                                                                                         \
    "[{'manager':'kube-controller-manager','operation':'Update','apiVersion':'v1','time':'2024-05-02T08:15:00Z',"     \
    "'fieldsType':'FieldsV1','fieldsV1':{'f:metadata':{'f:generateName':{},'f:labels':{'.':{},'f:app':{}}}}},"       \
    "{'manager':'kubelet','operation':'Update','apiVersion':'v1','time':'2024-05-02T08:15:04Z',"                      \
    "'fieldsType':'FieldsV1','fieldsV1':{'f:status':{'f:phase':{}}},'subresource':'status'}]"
#define POD_META_WITHOUT_MF "{" POD_META_FIELDS "}"
#define POD_META_WITH_MF "{" POD_META_FIELDS ",'managedFields':" POD_MF "}"
#define POD                                                                                                            \
    "{'kind':'Pod','apiVersion':'v1','metadata':" POD_META_WITH_MF ",'spec':{'containers':[{'name':'web',"           \
    "'image':'nginx:1.27','ports':[{'containerPort':80,'protocol':'TCP'}],'resources':{'limits':{'cpu':'500m',"      \
    "'memory':'128Mi'}}}],'restartPolicy':'Always','terminationGracePeriodSeconds':30,'nodeName':'node-1'},"         \
    "'status':{'phase':'Running','podIP':'10.244.1.17','startTime':'2024-05-02T08:15:00Z'}}"

#define NAMESPACE                                                                                                      \
    "{'kind':'Namespace','apiVersion':'v1','metadata':{'name':'team-a','uid':'3c2b1a09-8f7e-4d6c-b5a4-93827160f5e4',"  \
    "'resourceVersion':'301','creationTimestamp':'2024-05-01T09:00:00Z','labels':"                                   \
    "{'kubernetes.io/metadata.name':'team-a'},'managedFields':[{'manager':'kubectl-create','operation':'Update',"    \
    "'apiVersion':'v1','time':'2024-05-01T09:00:00Z','fieldsType':'FieldsV1','fieldsV1':{'f:metadata':{'f:labels':" \
    "{'.':{},'f:kubernetes.io/metadata.name':{}}}}}]},'spec':{'finalizers':['kubernetes']},"                        \
    "'status':{'phase':'Active'}}"

#endif
